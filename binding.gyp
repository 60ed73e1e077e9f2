{
  "targets": [
    {
      "target_name": "coffre_posix",
      "sources": ["native/posix.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
