import numpy as np, xgboost as xgb, lightgbm as lgb, yaml
from sklearn.datasets import load_breast_cancer, load_iris
x, y = load_breast_cancer(return_X_y=True)
xgb.XGBClassifier(n_estimators=20, max_depth=4, random_state=0).fit(x, y).save_model("bc.json")
np.save("bc.npy", x[:200].astype(np.float64))
xi, yi = load_iris(return_X_y=True)
m = lgb.LGBMClassifier(n_estimators=10, num_leaves=8, verbose=-1).fit(xi, yi); m.booster_.save_model("iris.txt")
np.save("iris.npy", xi.astype(np.float64))
base = {"input": "fixed<16,8,RND,SAT>", "score": "fixed<12,3,RND,SAT>"}
open("f_plain.yaml","w").write(yaml.safe_dump(base))
open("f_reuse.yaml","w").write(yaml.safe_dump({**base, "reuse_factor": 3, "pipeline": "per_level", "class_output": True}))
open("f_tmr.yaml","w").write(yaml.safe_dump({**base, "storage": {"thresholds": "register", "leaves": "tmr"}, "tmr_bits": {"leaves": 3}}))
open("f_i2c.yaml","w").write(yaml.safe_dump({**base, "storage": "tmr", "i2c": {"address": 42, "clk_hz": 40.0e6}}))
j = yaml.safe_load(open("/work/main/models/jet_mlp.yaml"))
j2 = dict(j); j2["default"] = {**j["default"], "reuse_factor": 4}
open("jet_r4.yaml","w").write(yaml.safe_dump(j2))
j3 = yaml.safe_load(open("/work/main/models/jet_mlp_tmr.yaml")); j3["i2c"] = {"address": 42, "clk_hz": 40.0e6}
open("jet_i2c.yaml","w").write(yaml.safe_dump(j3))
e = yaml.safe_load(open("/work/main/models/econt_encoder.yaml")); e["default"]["storage"] = "tmr"; e["default"]["tmr_bits"]=2
open("econt_tmr.yaml","w").write(yaml.safe_dump(e))
