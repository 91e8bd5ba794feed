variable "bucket_name" {
  type        = string
  description = "Name of the S3 bucket that holds generated audio and uploaded inputs (globally unique)."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit."
  }
}

variable "storage_prefix" {
  type        = string
  description = "Key prefix Soundstage writes under (STORAGE_URL=s3://<bucket>/<prefix>); the expiry rule applies to it."
  default     = "outputs"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.storage_prefix))
    error_message = "storage_prefix must be a relative key prefix without leading or trailing slashes, e.g. \"outputs\"."
  }
}

variable "output_expiration_days" {
  type        = number
  description = "Days after which stored files (outputs and uploaded prompts) are deleted. Jobs keep their rows; their files then answer 404."
  default     = 30

  validation {
    condition     = var.output_expiration_days >= 1 && floor(var.output_expiration_days) == var.output_expiration_days
    error_message = "output_expiration_days must be a whole number of days, at least 1."
  }
}

variable "versioning_enabled" {
  type        = bool
  description = "Keep previous versions of overwritten or deleted objects (a redelivered job replaces its own file). Old versions expire after noncurrent_version_expiration_days."
  default     = false
}

variable "noncurrent_version_expiration_days" {
  type        = number
  description = "With versioning, days after which previous object versions are deleted."
  default     = 7

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for server-side encryption (SSE-KMS). null: SSE-S3 (AES-256, no key to manage)."
  default     = null
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete a bucket that still holds objects. Keep false in production."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of this module."
  default     = {}
}
