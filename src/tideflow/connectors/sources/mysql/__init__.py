"""The ``mysql`` and ``mariadb`` sources: change capture from the ROW binlog."""
