"""`python -m vae_lab COMMAND`: one module per command, dispatched by `vae_lab.cli.main`."""
