"""How every executor behaves toward its user: one-line errors for their mistakes, a Ctrl-C that
stops, progress lines; and local copies of files at URIs for libraries that read only
local files."""
