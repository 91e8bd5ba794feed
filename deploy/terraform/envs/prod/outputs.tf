# `terraform output -raw kustomize_env > deploy/kubernetes/overlays/prod/terraform-outputs.env`
# The keys are those of overlays/prod/terraform-outputs.env.example; the overlay's
# replacements put each value where it belongs. No secrets: the database password stays in
# Secrets Manager (see database_password_command).
output "kustomize_env" {
  description = "terraform-outputs.env for deploy/kubernetes/overlays/prod."
  value       = <<-EOT
    REDIS_URL=${module.cache.redis_url}
    REDIS_ADDRESS=${module.cache.address}
    STORAGE_URL=${module.storage.storage_url}
    S3_REGION=${module.storage.bucket_region}
    SERVICE_ACCOUNT_ROLE_ARN=${module.iam.role_arn}
    MODEL_CACHE_FILE_SYSTEM_ID=${module.model_cache.file_system_id}
  EOT
}

output "database_endpoint" {
  description = "RDS host name."
  value       = module.database.endpoint
}

output "database_port" {
  description = "RDS port."
  value       = module.database.port
}

output "database_name" {
  description = "Database name."
  value       = module.database.database_name
}

output "database_url_template" {
  description = "DATABASE_URL for overlays/prod/secrets.env, with PASSWORD to replace by the URL-encoded password."
  value       = module.database.database_url_template
}

output "database_password_command" {
  description = "Prints the URL-encoded master password from Secrets Manager (RDS rotates it every 7 days: refresh secrets.env or sync it with External Secrets)."
  value       = module.database.master_user_secret_arn == null ? "echo 'master_password was given: use it'" : "aws secretsmanager get-secret-value --region ${var.region} --secret-id '${module.database.master_user_secret_arn}' --query SecretString --output text | python3 -c 'import json, sys, urllib.parse; print(urllib.parse.quote(json.load(sys.stdin)[\"password\"], safe=\"\"))'"
}

output "redis_primary_endpoint" {
  description = "ElastiCache primary endpoint host name."
  value       = module.cache.primary_endpoint
}

output "bucket_name" {
  description = "Output bucket name."
  value       = module.storage.bucket_name
}

output "bucket_region" {
  description = "Output bucket region."
  value       = module.storage.bucket_region
}

output "irsa_role_arn" {
  description = "IAM role of the soundstage-api and soundstage-worker service accounts."
  value       = module.iam.role_arn
}

output "model_cache_file_system_id" {
  description = "EFS file system of the shared model cache."
  value       = module.model_cache.file_system_id
}

output "gpu_node_group_name" {
  description = "GPU node group name."
  value       = module.gpu_nodes.node_group_name
}
