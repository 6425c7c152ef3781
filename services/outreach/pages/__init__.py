"""Server-rendered pages of the outreach service (Jinja2, plain CSS, forms that POST)."""
