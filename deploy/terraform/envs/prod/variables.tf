variable "region" {
  type        = string
  description = "AWS region of the EKS cluster and of everything created here."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "cluster_name" {
  type        = string
  description = "Name of the existing EKS cluster (with an IAM OIDC provider) that runs Soundstage."
}

variable "name" {
  type        = string
  description = "Prefix of every resource name (RDS instance, ElastiCache group, roles, node group)."
  default     = "soundstage"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the cluster's VPC (two or more availability zones) for the database, the cache and the model-cache mount targets."

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give private subnets in at least two availability zones."
  }
}

variable "gpu_subnet_ids" {
  type        = list(string)
  description = "Subnets for the GPU nodes; null uses private_subnet_ids. Narrow it to zones that offer the GPU instance types."
  default     = null
}

variable "extra_client_security_group_ids" {
  type        = list(string)
  description = "Security groups besides the cluster security group that may reach the database, cache and model cache (self-managed node groups, Karpenter nodes with their own group)."
  default     = []
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of Soundstage (deploy/kubernetes uses `soundstage`)."
  default     = "soundstage"
}

variable "bucket_name" {
  type        = string
  description = "Output bucket name; null: <name>-outputs-<account id>."
  default     = null
}

variable "output_expiration_days" {
  type        = number
  description = "Days after which generated files and uploaded inputs are deleted from the bucket."
  default     = 30
}

variable "postgres_engine_version" {
  type        = string
  description = "PostgreSQL version of the RDS instance (major, or major.minor)."
  default     = "16"
}

variable "database_instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.t4g.medium"
}

variable "database_multi_az" {
  type        = bool
  description = "Run the database Multi-AZ (standby with automatic failover)."
  default     = true
}

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type."
  default     = "cache.t4g.small"
}

variable "redis_num_cache_clusters" {
  type        = number
  description = "Redis nodes (primary + replicas); 2 or more for Multi-AZ failover."
  default     = 2
}

variable "gpu_instance_types" {
  type        = list(string)
  description = "GPU instance types for the worker node group (one GPU each)."
  default     = ["g5.2xlarge", "g6.2xlarge"]
}

variable "gpu_ami_type" {
  type        = string
  description = "AMI type of the GPU nodes (AL2023_x86_64_NVIDIA, AL2_x86_64_GPU or BOTTLEROCKET_x86_64_NVIDIA)."
  default     = "AL2023_x86_64_NVIDIA"
}

variable "gpu_min_size" {
  type        = number
  description = "Fewest GPU nodes."
  default     = 0
}

variable "gpu_desired_size" {
  type        = number
  description = "GPU nodes at creation (the cluster autoscaler owns it afterwards)."
  default     = 1
}

variable "gpu_max_size" {
  type        = number
  description = "Most GPU nodes: at least the sum of the GPU pools' KEDA maxReplicaCount (musicgen 4 + demucs 4 + magenta 4)."
  default     = 12
}

variable "install_efs_csi_driver" {
  type        = bool
  description = "Install the EFS CSI driver add-on for the shared model cache (false if the cluster has it)."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Tags on every resource (provider default_tags)."
  default     = { Project = "soundstage" }
}
