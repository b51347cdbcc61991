from setuptools import setup

setup()  # all metadata is declarative, in setup.cfg
