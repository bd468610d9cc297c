from setuptools import setup

setup(name="dummy", version="0.1.0", packages=["dummy"], install_requires=["tabulate==0.9.0"])
