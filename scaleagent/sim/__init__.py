"""The Rancher stand-in: Rancher's v3 management API subset and its tunnel endpoint, in memory
(with `--state-dir`, its clusters and registration tokens survive restarts, as in Rancher's datastore).

`scaleagent.sim.service.RancherSim` is the entry point for code (tests, the agent's embedded mode);
`twistd ranchersim` (`scaleagent.sim.tap`) runs it standalone.
"""
