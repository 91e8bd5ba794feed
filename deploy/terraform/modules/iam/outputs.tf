output "role_arn" {
  description = "ARN of the IRSA role: the eks.amazonaws.com/role-arn annotation of the Soundstage service accounts."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the IRSA role."
  value       = aws_iam_role.this.name
}
