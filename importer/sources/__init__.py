"""Where recordings live besides this machine's disk: objects in S3 and S3-compatible stores
(and, through the same fsspec interface, gs:// and az:// when their packages are installed),
named by their URL, read in ranges and streamed, never copied whole to disk.
"""
