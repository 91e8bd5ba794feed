output "bucket_name" {
  description = "Name of the output bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the output bucket (for IAM policies)."
  value       = aws_s3_bucket.this.arn
}

output "bucket_region" {
  description = "Region of the output bucket (S3_REGION)."
  value       = aws_s3_bucket.this.region
}

output "storage_url" {
  description = "STORAGE_URL for Soundstage: s3://<bucket>/<prefix>."
  value       = "s3://${aws_s3_bucket.this.id}/${var.storage_prefix}"
}
