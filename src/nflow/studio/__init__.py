"""The studio page's static files (``static/``), served at ``/_nflow/studio`` when
``[studio] enabled = true``. Plain ES modules and SVG: no build step, nothing to import here."""
