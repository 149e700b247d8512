"""The PARK stack program: typed config -> Platform -> exports. Invalid config stops here with every problem."""

import pulumi
from park.components.platform import Platform
from park.components.spec import spec_from_pulumi_config

spec = spec_from_pulumi_config()
platform = Platform(spec.cluster_name, spec)

pulumi.export("kubeconfig", platform.kubeconfig)
pulumi.export("clusterName", platform.cluster_name)
pulumi.export("queueNames", platform.queue_names)
pulumi.export("storageUri", platform.storage_uri)
pulumi.export("grafanaService", platform.grafana_service)
pulumi.export("prometheusService", platform.prometheus_service)
