output "endpoint" {
  description = "Host name of the database (without the port)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the Soundstage database."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "Master user name."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the master password (JSON with `username` and `password`); null when master_password was given."
  value       = try(aws_db_instance.this.master_user_secret[0].secret_arn, null)
}

output "database_url_template" {
  description = "DATABASE_URL for Soundstage with PASSWORD in place of the (URL-encoded) password."
  value       = "postgresql+psycopg://${aws_db_instance.this.username}:PASSWORD@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${aws_db_instance.this.db_name}?sslmode=require"
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.this.id
}
