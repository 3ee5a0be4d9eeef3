"""The data: the Challenge 2020 records read (`records`), downloaded (`download`) or generated
(`fixture`, the tiny profile's synthetic corpus), split into stratified folds (`folds`) and
prepared into the memmapped corpus every stage reads (`prepare`). The official scoring tables
(weights, dx mappings; BSD-2-Clause, LICENSE-challenge2020) sit beside them."""
