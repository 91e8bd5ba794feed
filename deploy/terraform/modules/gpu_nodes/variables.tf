variable "cluster_name" {
  type        = string
  description = "Name of the existing EKS cluster the GPU node group joins."
}

variable "node_group_name" {
  type        = string
  description = "Name of the managed node group (also prefixes its IAM role)."
  default     = "soundstage-gpu"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$", var.node_group_name))
    error_message = "node_group_name must be 1-50 letters, digits, hyphens or underscores."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the GPU nodes (pick zones that offer the instance types)."

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "Give at least one subnet."
  }
}

variable "instance_types" {
  type        = list(string)
  description = "GPU instance types, each with ONE NVIDIA GPU (a worker replica takes one GPU). Defaults: A10G (g5) and L4 (g6), 24 GB each, 8 vCPU and 32 GiB memory, which the kustomize gpu component's requests are sized for."
  default     = ["g5.2xlarge", "g6.2xlarge"]

  validation {
    condition     = length(var.instance_types) >= 1 && alltrue([for type in var.instance_types : can(regex("^(g4dn|g5|g6|g6e|gr6|p3|p4d|p5)\\.", type))])
    error_message = "instance_types must be NVIDIA GPU instance types (g4dn, g5, g6, g6e, gr6, p3, p4d, p5)."
  }
}

variable "ami_type" {
  type        = string
  description = "EKS-optimized AMI with the NVIDIA driver and container toolkit."
  default     = "AL2023_x86_64_NVIDIA"

  validation {
    condition     = contains(["AL2023_x86_64_NVIDIA", "AL2_x86_64_GPU", "BOTTLEROCKET_x86_64_NVIDIA"], var.ami_type)
    error_message = "ami_type must be AL2023_x86_64_NVIDIA, AL2_x86_64_GPU or BOTTLEROCKET_x86_64_NVIDIA."
  }
}

variable "capacity_type" {
  type        = string
  description = "ON_DEMAND, or SPOT (cheaper; a reclaimed node's running jobs are redelivered after BROKER_VISIBILITY_TIMEOUT)."
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "disk_size" {
  type        = number
  description = "Root volume in GiB: the CUDA worker image is several GB, plus container layers and logs."
  default     = 200

  validation {
    condition     = var.disk_size >= 50
    error_message = "disk_size must be at least 50 GiB for the CUDA images."
  }
}

variable "min_size" {
  type        = number
  description = "Fewest GPU nodes. 0 lets the cluster autoscaler remove every GPU node when KEDA scales the pools to zero."
  default     = 0

  validation {
    condition     = var.min_size >= 0
    error_message = "min_size cannot be negative."
  }
}

variable "desired_size" {
  type        = number
  description = "GPU nodes at creation; afterwards the cluster autoscaler owns it (ignored on later applies)."
  default     = 1

  validation {
    condition     = var.desired_size >= 0
    error_message = "desired_size cannot be negative."
  }
}

variable "max_size" {
  type        = number
  description = "Most GPU nodes: at least the sum of the GPU worker pools' KEDA maxReplicaCount (one GPU each)."
  default     = 12

  validation {
    condition     = var.max_size >= 1
    error_message = "max_size must be at least 1."
  }
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes version of the nodes; null follows the cluster's."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Extra Kubernetes labels for the GPU nodes (soundstage.io/gpu=true is always set: the gpu component selects on it)."
  default     = {}
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of this module."
  default     = {}
}
