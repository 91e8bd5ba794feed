# RDS PostgreSQL for the job rows: private, encrypted, TLS enforced, reachable only from the
# cluster's security groups.

locals {
  major_version = split(".", var.engine_version)[0]
  port          = 5432
}

resource "aws_db_subnet_group" "this" {
  name        = var.name
  description = "Soundstage PostgreSQL (${var.name})"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-postgres"
  description = "Soundstage PostgreSQL (${var.name}): PostgreSQL from the cluster only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-postgres" })
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = toset(var.client_security_group_ids)

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  description                  = "PostgreSQL from ${each.value}"
}

resource "aws_db_parameter_group" "this" {
  name        = "${var.name}-postgres${local.major_version}"
  family      = "postgres${local.major_version}"
  description = "Soundstage PostgreSQL ${local.major_version} (${var.name})"
  tags        = var.tags

  # Clients must use TLS (DATABASE_URL ends in ?sslmode=require).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "this" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class
  port           = local.port

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_id

  db_name  = var.database_name
  username = var.master_username
  # Either RDS manages the password in Secrets Manager, or it comes from the variable.
  manage_master_user_password = var.master_password == null ? true : null
  password                    = var.master_password

  multi_az               = var.multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.this.id]
  parameter_group_name   = aws_db_parameter_group.this.name
  publicly_accessible    = false

  backup_retention_period   = var.backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.skip_final_snapshot
  final_snapshot_identifier = var.skip_final_snapshot ? null : "${var.name}-final"

  auto_minor_version_upgrade   = true
  performance_insights_enabled = var.performance_insights_enabled

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.max_allocated_storage == 0 || var.max_allocated_storage >= var.allocated_storage
      error_message = "max_allocated_storage must be 0 (no autoscaling) or at least allocated_storage."
    }
  }
}
