# Bakes an ECS GPU-optimized AMI whose dockerd runs every container through gpu-share-runtime.
#
#   make release && make ami AMI_VARS='-var region=eu-west-1 -var sharing_placement=spread'
#
# See packer/README.md for the IAM permissions it needs and how an ECS cluster uses the AMI.

packer {
  # 1.7.0 brought data sources, required_plugins (packer init) and regex, 1.7.1 templatefile.
  # The data source reads variables only: Packer before 1.12.0 evaluates data sources before
  # locals (hashicorp/packer#11011).
  required_version = ">= 1.7.1"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.8"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region to build in; the AMI is registered there."
  default     = "us-east-1"
}

variable "os" {
  type        = string
  description = "Base ECS GPU-optimized AMI: amazon-linux-2 or amazon-linux-2023."
  default     = "amazon-linux-2"
  validation {
    condition     = contains(["amazon-linux-2", "amazon-linux-2023"], var.os)
    error_message = "The os must be amazon-linux-2 or amazon-linux-2023."
  }
}

variable "instance_type" {
  type        = string
  description = "Builder instance type. It must have an NVIDIA GPU, since the build ends with gpu-share doctor."
  default     = "g4dn.xlarge"
  validation {
    condition     = can(regex("^(g[0-9]|p[0-9])", var.instance_type))
    error_message = "The instance_type must be a GPU instance type (g4dn, g5, g6, p3, p4d, ...)."
  }
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the builder instance; empty means the default VPC."
  default     = ""
}

variable "volume_size" {
  type        = number
  description = "Root volume size in GiB."
  default     = 50
  validation {
    condition     = var.volume_size >= 30
    error_message = "The ECS GPU-optimized AMI needs a root volume of at least 30 GiB."
  }
}

variable "ami_name_prefix" {
  type        = string
  description = "Prefix of the AMI name; the base OS and a timestamp are appended."
  default     = "gpu-share-ecs-gpu"
  validation {
    condition     = can(regex("^[a-zA-Z0-9().\\-/_]{3,100}$", var.ami_name_prefix))
    error_message = "The ami_name_prefix must be 3 to 100 characters of letters, digits and ().-/_."
  }
}

variable "dist_dir" {
  type        = string
  description = "Directory holding the release binaries (make release); empty means ../target/dist beside this template."
  default     = ""
}

variable "sharing_default" {
  type        = string
  description = "What a container that does not set NVIDIA_VISIBLE_DEVICES gets: all (share the GPUs) or none."
  default     = "all"
  validation {
    condition     = contains(["all", "none"], var.sharing_default)
    error_message = "The sharing_default must be all or none."
  }
}

variable "sharing_placement" {
  type        = string
  description = "How containers that name no GPU are placed: all, spread or pack."
  default     = "all"
  validation {
    condition     = contains(["all", "spread", "pack"], var.sharing_placement)
    error_message = "The sharing_placement must be all, spread or pack."
  }
}

variable "max_per_gpu" {
  type        = number
  description = "Admission limit: live containers per GPU past which a create fails; 0 means no limit."
  default     = 0
  validation {
    condition     = var.max_per_gpu >= 0 && floor(var.max_per_gpu) == var.max_per_gpu
    error_message = "The max_per_gpu must be a whole number, 0 or more."
  }
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for the AMI and its snapshots."
  default     = {}
}

locals {
  dist_dir  = var.dist_dir != "" ? var.dist_dir : "${path.root}/../target/dist"
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())
  common_tags = merge({
    "Name"               = "${var.ami_name_prefix}-${var.os}"
    "gpu-share:version"  = "0.1.0"
    "gpu-share:base"     = var.os
    "gpu-share:base-ami" = data.amazon-parameterstore.source_ami.value
  }, var.tags)
}

# The public SSM parameter that names the current ECS GPU-optimized AMI of var.os. Variables
# only, no locals: Packer before 1.12.0 evaluates data sources before locals.
data "amazon-parameterstore" "source_ami" {
  name   = "/aws/service/ecs/optimized-ami/${var.os}/gpu/recommended/image_id"
  region = var.region
}

source "amazon-ebs" "ecs_gpu" {
  region          = var.region
  instance_type   = var.instance_type
  source_ami      = data.amazon-parameterstore.source_ami.value
  subnet_id       = var.subnet_id != "" ? var.subnet_id : null
  ssh_username    = "ec2-user"
  ami_name        = "${var.ami_name_prefix}-${var.os}-${local.timestamp}"
  ami_description = "ECS GPU-optimized ${var.os} with gpu-share-runtime as dockerd's default runtime"
  tags            = local.common_tags
  snapshot_tags   = local.common_tags

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.volume_size
    volume_type           = "gp3"
    delete_on_termination = true
  }
}

build {
  sources = ["source.amazon-ebs.ecs_gpu"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/gpu-share/systemd /tmp/gpu-share/units"]
  }

  provisioner "file" {
    sources = [
      "${local.dist_dir}/gpu-share-runtime",
      "${local.dist_dir}/gpu-share",
      "${path.root}/provision.sh",
    ]
    destination = "/tmp/gpu-share/"
  }

  provisioner "file" {
    source      = "${path.root}/../systemd/gpu-share-metrics.service"
    destination = "/tmp/gpu-share/systemd/gpu-share-metrics.service"
  }

  provisioner "file" {
    source      = "${path.root}/../systemd/gpu-share-mps.service"
    destination = "/tmp/gpu-share/systemd/gpu-share-mps.service"
  }

  # Boot-time units provision.sh installs: the /dev/char links, and the CDI spec where the
  # NVIDIA toolkit has no refresh unit of its own (or the ordering drop-in for the one it has).
  provisioner "file" {
    sources = [
      "${path.root}/units/gpu-share-dev-char.service",
      "${path.root}/units/gpu-share-cdi-generate.service",
      "${path.root}/units/nvidia-cdi-refresh-before-docker.conf",
    ]
    destination = "/tmp/gpu-share/units/"
  }

  provisioner "file" {
    content = templatefile("${path.root}/config.toml.pkrtpl", {
      sharing_default   = var.sharing_default
      sharing_placement = var.sharing_placement
      max_per_gpu       = var.max_per_gpu
    })
    destination = "/tmp/gpu-share/config.toml"
  }

  provisioner "shell" {
    inline = ["sudo SRC=/tmp/gpu-share bash /tmp/gpu-share/provision.sh"]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      os                = var.os
      sharing_placement = var.sharing_placement
    }
  }
}
