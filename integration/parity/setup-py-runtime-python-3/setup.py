from setuptools import setup

setup(name="demo-pkg", version="0.3.0", packages=["demo_pkg"])
