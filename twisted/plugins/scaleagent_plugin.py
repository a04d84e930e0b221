# Lazy twistd plugins: nothing of scaleagent is imported until its subcommand is used, so an import
# error in our code is reported as that error, not as "Unknown command".
from twisted.application.service import ServiceMaker

scaleagent = ServiceMaker(
    "scaleagent",
    "scaleagent.tap",
    "Simulated downstream Kubernetes clusters that a Rancher server manages",
    "scaleagent",
)

ranchersim = ServiceMaker(
    "ranchersim",
    "scaleagent.sim.tap",
    "A stand-in for Rancher: its v3 management API subset and tunnel endpoint, state in memory",
    "ranchersim",
)
