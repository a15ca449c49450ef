"""What exists, without torch: the init schemes and their parameters, the model configs, the datasets' facts.

The config validates against these registries in milliseconds (a config error never waits for torch or
Ray to load); `initsweep.engine` holds the torch code behind each entry.
"""
