# A managed GPU node group for an existing EKS cluster. Its nodes carry the label and taint
# that deploy/kubernetes/components/gpu selects and tolerates, so only GPU workers land
# there. The cluster also needs the NVIDIA device plugin (it advertises nvidia.com/gpu) and,
# for scaling, the cluster autoscaler or Karpenter.

locals {
  gpu_label = { "soundstage.io/gpu" = "true" }
  labels    = merge(var.labels, local.gpu_label)
  taint = {
    key    = "nvidia.com/gpu"
    value  = "true"
    effect = "NO_SCHEDULE"
  }
  node_policies = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ]
}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "nodes_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "nodes" {
  name               = "${var.node_group_name}-nodes"
  description        = "Soundstage GPU nodes of ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.nodes_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "nodes" {
  for_each = toset(local.node_policies)

  role       = aws_iam_role.nodes.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

resource "aws_eks_node_group" "this" {
  cluster_name    = var.cluster_name
  node_group_name = var.node_group_name
  node_role_arn   = aws_iam_role.nodes.arn
  subnet_ids      = var.subnet_ids
  version         = var.kubernetes_version

  ami_type       = var.ami_type
  instance_types = var.instance_types
  capacity_type  = var.capacity_type
  disk_size      = var.disk_size

  scaling_config {
    min_size     = var.min_size
    desired_size = var.desired_size
    max_size     = var.max_size
  }

  update_config {
    max_unavailable = 1
  }

  labels = local.labels

  taint {
    key    = local.taint.key
    value  = local.taint.value
    effect = local.taint.effect
  }

  tags = var.tags

  lifecycle {
    # The cluster autoscaler changes the size; Terraform must not reset it.
    ignore_changes = [scaling_config[0].desired_size]

    precondition {
      condition     = var.min_size <= var.desired_size && var.desired_size <= var.max_size
      error_message = "The sizes must satisfy min_size <= desired_size <= max_size."
    }
  }

  depends_on = [aws_iam_role_policy_attachment.nodes]
}
