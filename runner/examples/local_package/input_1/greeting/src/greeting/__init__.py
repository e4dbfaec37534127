"""A tiny package the example job installs from its requirements.txt."""


def hello(name: str) -> str:
    return f"hello, {name}, from an overlay package"
