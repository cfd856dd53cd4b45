"""Content Credentials (C2PA): every delivered image, video and poster signed as it is published under runs/...;
`campaign credentials FILE...` reads them back. Below pipeline/report, which publishes the run's files."""
