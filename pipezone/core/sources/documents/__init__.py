"""What document sources (MongoDB, REST) share: records typed into Arrow columns, nothing dropped."""
