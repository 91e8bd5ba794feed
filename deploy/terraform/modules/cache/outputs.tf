output "primary_endpoint" {
  description = "Host name of the primary (it follows failovers)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = local.port
}

output "address" {
  description = "host:port of the primary, as KEDA's redis trigger wants it."
  value       = "${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.port}"
}

output "redis_url" {
  description = "REDIS_URL for Soundstage (TLS, certificate verified; database 0). Without the AUTH token when one is set."
  value       = "rediss://${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.port}/0?ssl_cert_reqs=required"
}

output "auth_enabled" {
  description = "Whether clients must send the AUTH token."
  value       = local.auth_used
}

output "security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.this.id
}
