# ElastiCache Redis OSS: the Celery broker (one list per queue), worker heartbeats and metrics.
#
# Durability of queued jobs: ElastiCache has no `appendonly` (AOF) on Redis OSS 2.8.22 and
# later, so this module keeps jobs through failures the way ElastiCache allows: a replica in
# another availability zone with automatic failover (num_cache_clusters >= 2), daily
# snapshots, and `maxmemory-policy noeviction`, so a full node refuses new jobs (the API
# answers 503) instead of silently evicting queued ones. The job rows in PostgreSQL remain
# the source of truth either way.

locals {
  port      = 6379
  family    = "redis${split(".", var.engine_version)[0]}"
  multi_az  = var.num_cache_clusters > 1
  auth_used = nonsensitive(var.auth_token != null)
}

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "Soundstage Redis (${var.name})"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-redis"
  description = "Soundstage Redis (${var.name}): Redis from the cluster only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-redis" })
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = toset(var.client_security_group_ids)

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  description                  = "Redis from ${each.value}"
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-${local.family}"
  family      = local.family
  description = "Soundstage broker (${var.name}): never evict queued jobs"
  tags        = var.tags

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "Soundstage broker and live state (${var.name})"

  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = local.port
  parameter_group_name = aws_elasticache_parameter_group.this.name

  num_cache_clusters         = var.num_cache_clusters
  automatic_failover_enabled = local.multi_az
  multi_az_enabled           = local.multi_az

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.this.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_id
  transit_encryption_enabled = true
  auth_token                 = var.auth_token

  snapshot_retention_limit   = var.snapshot_retention_limit
  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  tags = var.tags
}
