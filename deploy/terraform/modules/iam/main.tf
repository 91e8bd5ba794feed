# IAM role for service accounts (IRSA): pods running as the Soundstage service accounts get
# temporary credentials for this role from the EKS pod identity webhook (no static keys),
# and the role may use the output bucket and nothing else.

locals {
  issuer = trimprefix(var.oidc_issuer_url, "https://")
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "SoundstageServiceAccounts"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = [for account in var.service_accounts : "system:serviceaccount:${var.namespace}:${account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.role_name
  description          = "Soundstage pods (${var.namespace}: ${join(", ", var.service_accounts)}): the output bucket"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "bucket" {
  # HeadBucket (the API's /ready check) needs ListBucket; so does a 404 (not 403) on a
  # missing object.
  statement {
    sid       = "Bucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.bucket_arn]
  }

  statement {
    sid    = "Objects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${var.bucket_arn}/*"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "BucketKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "bucket" {
  name   = "output-bucket"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.bucket.json
}
