"""Console screens: clinic (all machines), machine (one machine's view), faults, help, scenario."""
