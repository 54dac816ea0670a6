"""The Jupyter server extension: REST API under ``/envpack`` over the core and the operations."""
