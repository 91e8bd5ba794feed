output "node_group_name" {
  description = "Name of the GPU node group."
  value       = aws_eks_node_group.this.node_group_name
}

output "node_role_arn" {
  description = "IAM role of the GPU nodes."
  value       = aws_iam_role.nodes.arn
}

output "node_labels" {
  description = "Kubernetes labels of the GPU nodes (the gpu component's nodeSelector is soundstage.io/gpu=true)."
  value       = local.labels
}

output "node_taint" {
  description = "Taint of the GPU nodes (the gpu component tolerates nvidia.com/gpu)."
  value       = "${local.taint.key}=${local.taint.value}:NoSchedule"
}
