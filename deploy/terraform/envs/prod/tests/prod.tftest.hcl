# `terraform test` with a mocked AWS provider: plans and "applies" the whole env root without
# credentials, and checks what the Kubernetes prod overlay reads from it.

mock_provider "aws" {
  # The provider still validates policies: give every policy document a JSON object.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  # Computed values that other resources or variable validations check the shape of.
  mock_resource "aws_s3_bucket" {
    defaults = {
      id     = "soundstage-outputs-123456789012"
      arn    = "arn:aws:s3:::soundstage-outputs-123456789012"
      region = "eu-west-1"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  override_data {
    target = data.aws_caller_identity.current
    values = {
      account_id = "123456789012"
    }
  }

  override_data {
    target = data.aws_eks_cluster.this
    values = {
      vpc_config = [{
        vpc_id                    = "vpc-0123456789abcdef0"
        cluster_security_group_id = "sg-0123456789abcdef0"
        subnet_ids                = []
        security_group_ids        = []
        endpoint_private_access   = true
        endpoint_public_access    = false
        public_access_cidrs       = []
      }]
      identity = [{
        oidc = [{
          issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
        }]
      }]
    }
  }

  override_data {
    target = data.aws_iam_openid_connect_provider.cluster
    values = {
      arn = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
    }
  }
}

variables {
  region             = "eu-west-1"
  cluster_name       = "example"
  private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
}

run "prod" {
  command = apply

  assert {
    condition     = module.storage.bucket_name == "soundstage-outputs-123456789012"
    error_message = "the default bucket name is <name>-outputs-<account id>"
  }

  assert {
    condition     = startswith(output.kustomize_env, "REDIS_URL=rediss://") && strcontains(output.kustomize_env, "\nSTORAGE_URL=s3://soundstage-outputs-123456789012/outputs\n")
    error_message = "kustomize_env: ${output.kustomize_env}"
  }

  assert {
    condition     = length(regexall("(?m)^[A-Z0-9_]+=\\S+$", output.kustomize_env)) == 6
    error_message = "kustomize_env must hold six KEY=value lines: ${output.kustomize_env}"
  }
}
