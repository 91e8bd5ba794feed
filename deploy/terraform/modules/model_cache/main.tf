# Shared model cache for the worker pools: an encrypted EFS file system that every GPU node
# can mount, so all worker replicas read one copy of the weights (the soundstage-models
# ReadWriteMany volume of the prod overlay, through its soundstage-efs StorageClass), and
# the EFS CSI driver that mounts it.

locals {
  issuer = trimprefix(var.oidc_issuer_url, "https://")
}

data "aws_partition" "current" {}

resource "aws_efs_file_system" "this" {
  creation_token   = var.name
  encrypted        = true
  kms_key_id       = var.kms_key_id
  performance_mode = "generalPurpose"
  throughput_mode  = var.throughput_mode
  tags             = merge(var.tags, { Name = var.name })
}

resource "aws_security_group" "this" {
  name        = "${var.name}-efs"
  description = "Soundstage model cache (${var.name}): NFS from the cluster only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-efs" })
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = toset(var.client_security_group_ids)

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  description                  = "NFS from ${each.value}"
}

resource "aws_efs_mount_target" "this" {
  for_each = toset(var.subnet_ids)

  file_system_id  = aws_efs_file_system.this.id
  subnet_id       = each.value
  security_groups = [aws_security_group.this.id]
}

# --- the EFS CSI driver (EKS add-on) and its IRSA role ------------------------------------

data "aws_iam_policy_document" "csi_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringLike"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:kube-system:efs-csi-*"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "csi" {
  count = var.install_csi_driver ? 1 : 0

  name               = "${var.name}-efs-csi"
  description        = "EFS CSI driver of ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.csi_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "csi" {
  count = var.install_csi_driver ? 1 : 0

  role       = aws_iam_role.csi[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"
}

resource "aws_eks_addon" "efs_csi" {
  count = var.install_csi_driver ? 1 : 0

  cluster_name                = var.cluster_name
  addon_name                  = "aws-efs-csi-driver"
  service_account_role_arn    = aws_iam_role.csi[0].arn
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "PRESERVE"
  tags                        = var.tags

  depends_on = [aws_iam_role_policy_attachment.csi]
}
