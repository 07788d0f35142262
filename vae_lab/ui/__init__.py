"""The comparison tab: one Gradio UI for the WebUI and the standalone app (`python -m vae_lab serve`)."""
