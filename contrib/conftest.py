# The template holds cookiecutter placeholders, not importable code; tests/test_template.py
# renders it and tests the result.
collect_ignore_glob = ["kme-plugin-template/*"]
