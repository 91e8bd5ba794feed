variable "name" {
  type        = string
  description = "Replication group id; also names the subnet group, parameter group and security group."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name))
    error_message = "name must start with a letter and hold only lowercase letters, digits and hyphens (at most 40 characters)."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the EKS cluster; the cache's security group is created in it."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the cache subnet group (several availability zones for Multi-AZ)."

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "Give at least one subnet."
  }
}

variable "client_security_group_ids" {
  type        = list(string)
  description = "Security groups allowed to connect on the Redis port: the EKS cluster security group (API, workers and KEDA run there)."

  validation {
    condition     = length(var.client_security_group_ids) >= 1
    error_message = "Give at least one client security group, or nothing can reach Redis."
  }
}

variable "engine_version" {
  type        = string
  description = "Redis OSS engine version (the parameter group family follows its major version)."
  default     = "7.1"

  validation {
    condition     = can(regex("^[67]\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must be a Redis OSS 6.x or 7.x version such as \"7.1\"."
  }
}

variable "node_type" {
  type        = string
  description = "Cache node type. The broker holds job ids, heartbeats and metrics: small nodes suffice."
  default     = "cache.t4g.small"

  validation {
    condition     = startswith(var.node_type, "cache.")
    error_message = "node_type must be an ElastiCache node type such as cache.t4g.small."
  }
}

variable "num_cache_clusters" {
  type        = number
  description = "Nodes in the replication group: 1 primary plus replicas. 2 or more turns on automatic failover and Multi-AZ, which is what keeps queued jobs through a node failure."
  default     = 2

  validation {
    condition     = var.num_cache_clusters >= 1 && var.num_cache_clusters <= 6
    error_message = "num_cache_clusters must be between 1 and 6."
  }
}

variable "snapshot_retention_limit" {
  type        = number
  description = "Days of daily snapshots to keep (0 turns snapshots off)."
  default     = 7

  validation {
    condition     = var.snapshot_retention_limit >= 0 && var.snapshot_retention_limit <= 35
    error_message = "snapshot_retention_limit must be between 0 and 35."
  }
}

variable "auth_token" {
  type        = string
  description = "Optional Redis AUTH token (16-128 printable characters). null: no AUTH; the security group is the guard. With a token, REDIS_URL carries it: move REDIS_URL into the Secret and give KEDA a TriggerAuthentication."
  default     = null
  sensitive   = true

  validation {
    condition     = var.auth_token == null || try(length(var.auth_token) >= 16 && length(var.auth_token) <= 128, false)
    error_message = "auth_token must be 16 to 128 characters long (or null)."
  }
}

variable "kms_key_id" {
  type        = string
  description = "KMS key ARN for encryption at rest. null: the AWS-managed key."
  default     = null
}

variable "apply_immediately" {
  type        = bool
  description = "Apply modifications now instead of in the next maintenance window."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of this module."
  default     = {}
}
