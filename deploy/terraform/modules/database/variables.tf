variable "name" {
  type        = string
  description = "Identifier of the RDS instance; also names its subnet group, parameter group and security group."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,52}[a-z0-9]$", var.name))
    error_message = "name must start with a letter and hold only lowercase letters, digits and hyphens (at most 54 characters)."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the EKS cluster; the database's security group is created in it."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the DB subnet group, in at least two availability zones."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "RDS needs subnets in at least two availability zones."
  }
}

variable "client_security_group_ids" {
  type        = list(string)
  description = "Security groups allowed to connect on the PostgreSQL port: the EKS cluster security group (it is on every managed node) and any other node groups'."

  validation {
    condition     = length(var.client_security_group_ids) >= 1
    error_message = "Give at least one client security group, or nothing can reach the database."
  }
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL version: a major (\"16\", RDS picks the current minor and upgrades it) or a full version (\"16.4\")."
  default     = "16"

  validation {
    condition     = can(regex("^(1[3-9])(\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be PostgreSQL 13 or later, e.g. \"16\" or \"16.4\"."
  }
}

variable "instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.t4g.medium"

  validation {
    condition     = startswith(var.instance_class, "db.")
    error_message = "instance_class must be an RDS class such as db.t4g.medium or db.m7g.large."
  }
}

variable "allocated_storage" {
  type        = number
  description = "Initial storage in GiB (gp3)."
  default     = 20

  validation {
    condition     = var.allocated_storage >= 20
    error_message = "gp3 storage starts at 20 GiB."
  }
}

variable "max_allocated_storage" {
  type        = number
  description = "Upper bound for storage autoscaling in GiB; 0 turns storage autoscaling off."
  default     = 100
}

variable "multi_az" {
  type        = bool
  description = "Keep a synchronous standby in another availability zone with automatic failover."
  default     = true
}

variable "database_name" {
  type        = string
  description = "Name of the database Soundstage uses."
  default     = "soundstage"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase PostgreSQL identifier."
  }
}

variable "master_username" {
  type        = string
  description = "Master user name (Soundstage connects as this user)."
  default     = "soundstage"
}

variable "master_password" {
  type        = string
  description = "Master password. null (recommended): RDS generates it and keeps it in Secrets Manager (manage_master_user_password), rotating it every 7 days, so sync DATABASE_URL with External Secrets or re-read it after a rotation. A value here is stored in the Terraform state."
  default     = null
  sensitive   = true

  validation {
    condition     = var.master_password == null || try(length(var.master_password) >= 16, false)
    error_message = "master_password must be at least 16 characters (or null to let RDS manage it)."
  }
}

variable "backup_retention_days" {
  type        = number
  description = "Days of automated backups (point-in-time recovery)."
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance (turn off before `terraform destroy`)."
  default     = true
}

variable "skip_final_snapshot" {
  type        = bool
  description = "Skip the final snapshot when the instance is deleted."
  default     = false
}

variable "kms_key_id" {
  type        = string
  description = "KMS key ARN for storage encryption. null: the AWS-managed RDS key."
  default     = null
}

variable "performance_insights_enabled" {
  type        = bool
  description = "Enable Performance Insights (7 days retention is free)."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of this module."
  default     = {}
}
