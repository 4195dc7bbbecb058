"""Opens every Parquet table of dagrun stores with the readers installed in this
Python (DuckDB, pyarrow, polars, pandas: whichever import) and checks each one's
row count against the stage record and a checksum of its first numeric column
against what the newest reader computed (passed in with --expect).

Usage: python check.py [--expect FILE] [--write FILE] STORE...
Prints one line per (reader, table) that fails, and `readers <label>: N passed, M failed`.
"""
import glob, json, os, sys

def tables(stores):
    for store in stores:
        for rec_path in sorted(glob.glob(os.path.join(store, "latest", "*", ".record.json"))):
            rec = json.load(open(rec_path))
            for name, out in sorted(rec["outputs"].items()):
                if out["ext"] == "parquet":
                    path = os.path.join(os.path.dirname(rec_path), name + ".parquet")
                    yield f"{os.path.basename(store)}/{rec['stage']}.{name}", os.path.realpath(path), out.get("rows")

def duckdb_reader():
    import duckdb
    con = duckdb.connect()
    def read(path):
        src = f"read_parquet('{path}')"
        described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
        n = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        numeric = ("INTEGER", "BIGINT", "TINYINT", "FLOAT", "DOUBLE")
        num = next((row[0] for row in described if row[1] in numeric), None)
        s = con.execute(f'SELECT sum("{num}")::DOUBLE FROM {src}').fetchone()[0] if num else None
        # Touch every column, lists included, so a column that cannot be decoded fails here.
        con.execute(f"SELECT * FROM {src}").fetchall()
        return n, num, s
    return f"duckdb {duckdb.__version__}", read

def pyarrow_reader():
    import pyarrow, pyarrow.parquet as pq, pyarrow.compute as pc, pyarrow.types as pt
    def read(path):
        t = pq.read_table(path)
        num = next((f.name for f in t.schema if pt.is_integer(f.type) or pt.is_floating(f.type)), None)
        s = float(pc.sum(t.column(num)).as_py() or 0) if num else None
        return t.num_rows, num, s
    return f"pyarrow {pyarrow.__version__}", read

def polars_reader():
    import polars as pl
    def read(path):
        df = pl.read_parquet(path)
        num = next((c for c, t in zip(df.columns, df.dtypes) if t.is_numeric()), None)
        s = float(df[num].sum()) if num else None
        return df.height, num, s
    return f"polars {pl.__version__}", read

def pandas_reader():
    import pandas as pd
    def read(path):
        df = pd.read_parquet(path)
        num = next((c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])), None)
        s = float(df[num].sum()) if num else None
        return len(df), num, s
    return f"pandas {pd.__version__}", read

def main(argv):
    expect, write, stores = None, None, []
    it = iter(argv)
    for a in it:
        if a == "--expect": expect = json.load(open(next(it)))
        elif a == "--write": write = next(it)
        else: stores.append(a)
    readers = []
    for make in (duckdb_reader, pyarrow_reader, polars_reader, pandas_reader):
        try:
            readers.append(make())
        except ImportError:
            pass
    passed = failed = 0
    sums = {}
    for label, read in readers:
        for table, path, rows in tables(stores):
            try:
                n, col, s = read(path)
                problems = []
                if rows is not None and n != rows:
                    problems.append(f"{n} rows, the record says {rows}")
                want = (expect or {}).get(table)
                # An empty table has no sum to compare: the newest reader's is NULL, pyarrow's 0.
                if want is not None and None not in (s, want[1]) and want[0] == col and abs(want[1] - s) > 1e-6 * max(1.0, abs(want[1])):
                    problems.append(f"sum({col}) = {s}, expected {want[1]}")
                sums.setdefault(table, [col, s])
            except Exception as e:
                problems = [f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"]
            if problems:
                failed += 1
                print(f"FAILED {label}: {table} ({path}): {'; '.join(problems)}")
            else:
                passed += 1
    if write:
        json.dump(sums, open(write, "w"))
    names = ", ".join(label for label, _ in readers) or "no reader"
    print(f"readers ({names}): {passed} passed, {failed} failed")
    return 1 if failed or not readers else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
