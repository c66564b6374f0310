{
  "targets": [
    {
      "target_name": "sdnode",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_build",
          "inputs": [],
          "outputs": ["<(PRODUCT_DIR)/sdnode.node"],
          "action": ["node", "<(module_root_dir)/scripts/build-native.mjs", "--out", "<(PRODUCT_DIR)"]
        }
      ]
    }
  ]
}
