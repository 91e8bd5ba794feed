variable "name" {
  type        = string
  description = "Name of the EFS file system and its security group."

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", var.name))
    error_message = "name must be 1-63 letters, digits, hyphens or underscores."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the EKS cluster; the file system's security group is created in it."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets that get a mount target: one per availability zone the GPU nodes run in."

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "Give at least one subnet."
  }
}

variable "client_security_group_ids" {
  type        = list(string)
  description = "Security groups allowed to mount the file system (NFS): the EKS cluster security group."

  validation {
    condition     = length(var.client_security_group_ids) >= 1
    error_message = "Give at least one client security group, or no node can mount the cache."
  }
}

variable "throughput_mode" {
  type        = string
  description = "EFS throughput mode. `elastic` serves the bursts of reading model weights at pod start without provisioning."
  default     = "elastic"

  validation {
    condition     = contains(["elastic", "bursting"], var.throughput_mode)
    error_message = "throughput_mode must be elastic or bursting."
  }
}

variable "kms_key_id" {
  type        = string
  description = "KMS key ARN for encryption at rest. null: the AWS-managed EFS key."
  default     = null
}

variable "install_csi_driver" {
  type        = bool
  description = "Install the aws-efs-csi-driver EKS add-on (with its own IRSA role). false if the cluster already runs the EFS CSI driver."
  default     = true
}

variable "cluster_name" {
  type        = string
  description = "Name of the EKS cluster (for the EFS CSI driver add-on)."
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the cluster's IAM OIDC provider (for the EFS CSI driver's IRSA role)."
}

variable "oidc_issuer_url" {
  type        = string
  description = "OIDC issuer URL of the cluster, with or without https:// (for the EFS CSI driver's IRSA role)."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of this module."
  default     = {}
}
