output "file_system_id" {
  description = "EFS file system id: fileSystemId of the prod overlay's soundstage-efs StorageClass."
  value       = aws_efs_file_system.this.id
}

output "security_group_id" {
  description = "Security group of the mount targets."
  value       = aws_security_group.this.id
}

output "csi_driver_role_arn" {
  description = "IRSA role of the EFS CSI driver; null when install_csi_driver is false."
  value       = try(aws_iam_role.csi[0].arn, null)
}
