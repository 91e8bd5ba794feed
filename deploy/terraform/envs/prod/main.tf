# Soundstage's cloud side on AWS, for an existing EKS cluster: the output bucket, RDS
# PostgreSQL, ElastiCache Redis, the IRSA role of the pods, a GPU node group and the shared
# model cache. `terraform output -raw kustomize_env` feeds deploy/kubernetes/overlays/prod.

data "aws_caller_identity" "current" {}

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

data "aws_iam_openid_connect_provider" "cluster" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

locals {
  vpc_id     = data.aws_eks_cluster.this.vpc_config[0].vpc_id
  issuer_url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
  # Every managed node (the GPU node group included) carries the cluster security group.
  client_security_group_ids = concat(
    [data.aws_eks_cluster.this.vpc_config[0].cluster_security_group_id],
    var.extra_client_security_group_ids,
  )
  bucket_name = coalesce(var.bucket_name, "${var.name}-outputs-${data.aws_caller_identity.current.account_id}")
}

module "storage" {
  source = "../../modules/storage"

  bucket_name            = local.bucket_name
  output_expiration_days = var.output_expiration_days
}

module "database" {
  source = "../../modules/database"

  name                      = var.name
  vpc_id                    = local.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = local.client_security_group_ids
  engine_version            = var.postgres_engine_version
  instance_class            = var.database_instance_class
  multi_az                  = var.database_multi_az
}

module "cache" {
  source = "../../modules/cache"

  name                      = var.name
  vpc_id                    = local.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = local.client_security_group_ids
  node_type                 = var.redis_node_type
  num_cache_clusters        = var.redis_num_cache_clusters
}

module "iam" {
  source = "../../modules/iam"

  role_name         = "${var.name}-s3"
  oidc_provider_arn = data.aws_iam_openid_connect_provider.cluster.arn
  oidc_issuer_url   = local.issuer_url
  namespace         = var.namespace
  bucket_arn        = module.storage.bucket_arn
}

module "gpu_nodes" {
  source = "../../modules/gpu_nodes"

  cluster_name    = var.cluster_name
  node_group_name = "${var.name}-gpu"
  subnet_ids      = coalesce(var.gpu_subnet_ids, var.private_subnet_ids)
  instance_types  = var.gpu_instance_types
  ami_type        = var.gpu_ami_type
  min_size        = var.gpu_min_size
  desired_size    = var.gpu_desired_size
  max_size        = var.gpu_max_size
}

module "model_cache" {
  source = "../../modules/model_cache"

  name                      = "${var.name}-models"
  vpc_id                    = local.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = local.client_security_group_ids
  install_csi_driver        = var.install_efs_csi_driver
  cluster_name              = var.cluster_name
  oidc_provider_arn         = data.aws_iam_openid_connect_provider.cluster.arn
  oidc_issuer_url           = local.issuer_url
}
