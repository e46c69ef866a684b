"""Wire formats: marshmallow schemas named XxxIn, XxxOut, XxxUpdate."""
