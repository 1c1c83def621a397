"""Views, one module per capability; `common` holds what they share."""
