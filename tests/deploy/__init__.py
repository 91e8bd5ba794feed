"""Deployment files checked without a Docker engine or a cluster: Dockerfiles, docker-compose, kustomize, Terraform."""
