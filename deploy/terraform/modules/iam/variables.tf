variable "role_name" {
  type        = string
  description = "Name of the IAM role the Soundstage pods assume (IRSA)."

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the EKS cluster's IAM OIDC provider (aws_iam_openid_connect_provider)."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_issuer_url" {
  type        = string
  description = "OIDC issuer URL of the EKS cluster (aws_eks_cluster identity[0].oidc[0].issuer), with or without https://."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the Soundstage service accounts (deploy/kubernetes uses `soundstage`)."
  default     = "soundstage"
}

variable "service_accounts" {
  type        = list(string)
  description = "Service accounts that may assume the role: those of the API and the workers in deploy/kubernetes."
  default     = ["soundstage-api", "soundstage-worker"]

  validation {
    condition     = length(var.service_accounts) >= 1
    error_message = "Give at least one service account."
  }
}

variable "bucket_arn" {
  type        = string
  description = "ARN of the output bucket the pods read and write."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]+$", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN (arn:aws:s3:::name)."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the bucket, if it is SSE-KMS; null for SSE-S3."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of this module."
  default     = {}
}
