"""The ``mysql`` destination (MySQL and MariaDB)."""
