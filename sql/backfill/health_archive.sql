-- WAL segments waiting for the archiver.
SELECT count(*) AS ready FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'
