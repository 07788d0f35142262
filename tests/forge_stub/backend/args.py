"""backend/args.py: `dynamic_args`, values processing hands to the loader."""

dynamic_args = dict(embedding_dir="embeddings", emphasis_name="Original", forge_unet_storage_dtype=None, online_lora=False)
