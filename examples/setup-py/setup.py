from setuptools import setup

setup(
    name="mypkg",
    version="0.1.0",
    description="Tiny example package for the r2env setup-py example",
    packages=["mypkg"],
    python_requires=">=3.8",
    install_requires=["click==8.1.7"],
    entry_points={"console_scripts": ["mypkg-hello = mypkg:main"]},
)
