"""The demo shop's tables (SQLite DDL): customers, products, orders, order_items, and the record of the
change batches applied. Reviews are declared with their generator (reviews.py)."""

DDL = """
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    first_name VARCHAR(50) NOT NULL,
    last_name VARCHAR(50) NOT NULL,
    email VARCHAR(120),
    country VARCHAR(8),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    sku VARCHAR(20) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL,
    category VARCHAR(50) NOT NULL,
    unit_price NUMERIC(10,2) NOT NULL,
    active BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    order_date TIMESTAMP NOT NULL,
    status VARCHAR(20) NOT NULL,
    total_amount NUMERIC(12,2) NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE order_items (
    order_item_id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (order_id),
    product_id INTEGER NOT NULL REFERENCES products (product_id),
    quantity INTEGER NOT NULL,
    unit_price NUMERIC(10,2) NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_customers_updated_at ON customers (updated_at);
CREATE INDEX ix_products_updated_at ON products (updated_at);
CREATE INDEX ix_orders_updated_at ON orders (updated_at);
CREATE INDEX ix_order_items_updated_at ON order_items (updated_at);
CREATE INDEX ix_order_items_order_id ON order_items (order_id);
CREATE TABLE _demo_batches (
    batch INTEGER PRIMARY KEY,  -- 0 is the initial load
    seed INTEGER NOT NULL,
    applied_at TIMESTAMP NOT NULL  -- data time of the batch, not wall-clock time: keeps files reproducible
);
"""
