"""AWS CDK (v2, Python) app that deploys fashion-search; entry point `python -m infra.app`."""
