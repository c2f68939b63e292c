"""The metadata store shared by the control plane and the data plane."""
